"""The studio: a Gradio app whose handlers call `reasoner` (handler -> pipeline -> backend)."""
