"""Answering a question: understanding it, retrieving and reranking passages, choosing evidence, composing and checking the answer."""
