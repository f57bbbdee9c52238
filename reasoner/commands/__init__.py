"""The commands that sit above the engine: `bench` (time the engines side by side) and
`export-onnx` (write a model's graphs). They resolve and load models; the engine they drive reads
tensors only. `generate` and `eval` are in `reasoner/cli.py` and `reasoner/eval.py`."""
