"""`python -m probes ...`: the probes command line."""

from probes.cli import probes_app

if __name__ == "__main__":
    probes_app(prog_name="probes")
