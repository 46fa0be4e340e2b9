from .console import amt_transcribe

amt_transcribe()
