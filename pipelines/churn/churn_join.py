"""Churn: join users and events into the training set."""

if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "_common"))
    from artifacts import run_step

    sys.exit(run_step(__file__))
