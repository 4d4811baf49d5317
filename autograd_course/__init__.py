"""PyTorch autograd exercises (Questions 6-9) and the grader that marks them."""

__version__ = "0.1.0"
