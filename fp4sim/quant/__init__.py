"""LLM-FP4 quantization front end (PyTorch): the method's maths, model surgery and export."""
