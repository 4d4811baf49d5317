"""Every catalog entry, graded as a real submission: each mistake loses exactly the points of the part it gets
wrong, with a message that names the likely cause; each right answer written another way earns full marks."""

from __future__ import annotations

import pytest

from autograd_course.catalog import ALTERNATIVES, CATALOG, MISTAKES, pack_into_students, part_points, solved, submission
from autograd_course.grading import grade

from course_helpers import submit
from gradebook_helpers import failure_message, feedback_text, part_scores

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def graded(module_course):
    course = module_course
    students = pack_into_students(CATALOG, "variant")
    for student, variants in students.items():
        submit(course, student, {
            notebook_id: variants[notebook_id].build(course) if notebook_id in variants else solved(course, notebook_id)
            for notebook_id in course.notebook_ids
        })
    submit(course, "solution", {notebook_id: solved(course, notebook_id) for notebook_id in course.notebook_ids})
    submit(course, "untouched", {notebook_id: submission(course, notebook_id) for notebook_id in course.notebook_ids})
    rows = {row.student_id: row for row in grade(course, jobs=2)}
    carrier = {id(variant): student for student, variants in students.items() for variant in variants.values()}
    return course, rows, carrier


def test_solutions_score_full_marks(graded):
    _, rows, _ = graded
    assert rows["solution"].score == 40
    assert rows["solution"].max_score == 40
    assert rows["solution"].status == "ok"


def test_untouched_release_scores_zero_with_status_ok(graded):
    course, rows, _ = graded
    assert rows["untouched"].score == 0
    assert rows["untouched"].status == "ok"
    for notebook_id in course.notebook_ids:
        assert set(part_scores(course, "untouched", notebook_id).values()) == {0.0}


@pytest.mark.parametrize("variant", CATALOG, ids=lambda variant: variant.name)
def test_variant_earns_exactly_the_expected_points(graded, variant):
    course, rows, carrier = graded
    student = carrier[id(variant)]
    assert part_scores(course, student, variant.notebook) == variant.expected_points(course)
    # Honest mistakes are not tampering, timeouts or crashes.
    assert rows[student].status == "ok"


@pytest.mark.parametrize("variant", MISTAKES, ids=lambda variant: variant.name)
def test_mistake_is_explained_in_the_result_and_the_feedback(graded, variant):
    course, _, carrier = graded
    student = carrier[id(variant)]
    feedback = feedback_text(course, student, variant.notebook)
    for part, hint in variant.hints.items():
        assert hint in failure_message(course, student, variant.notebook, part)
        assert hint in feedback


def test_every_mistake_loses_points_and_explains_each_loss():
    for variant in MISTAKES:
        assert variant.lost, variant.name
        assert set(variant.hints) == set(variant.lost), variant.name


def test_alternatives_lose_nothing():
    assert all(not variant.lost for variant in ALTERNATIVES)


def test_parts_add_up_to_ten_per_question(module_course):
    for notebook_id in module_course.notebook_ids:
        assert sum(part_points(module_course, notebook_id).values()) == 10
