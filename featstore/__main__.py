"""`python -m featstore ...`: the featstore command line, which is how torchrun starts it (`torchrun -m featstore`)."""

from featstore.cli import featstore_app

if __name__ == "__main__":
    featstore_app(prog_name="featstore")
