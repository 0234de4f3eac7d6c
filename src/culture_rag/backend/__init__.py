"""The embedding model's backends below the facade in embedding.py, split as
sentence-transformers' `backend/` is: export.py traces the model to ONNX once, quantize.py makes
the int8 passage graph and names the CPU's int8 kernels, onnx.py runs the graphs in ONNX Runtime,
pooling.py pools a text's and its sentences' vectors from one pass (late chunking)."""
