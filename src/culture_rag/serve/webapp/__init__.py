"""The Gradio web chat (`culture-rag serve`): the page, its rendering and its assets."""
