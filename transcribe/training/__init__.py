"""Training side of amt-transcribe: synthesis, labels, data, the loop, evaluation.

Inference never imports this package.
"""
