from .cli import main

main(prog_name="amt-transcribe")
