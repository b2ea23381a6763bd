"""`python -m gemini_tasks.emulator` runs the same click command as `gemini-tasks emulator`."""

from .cli import emulator

if __name__ == "__main__":
    emulator(prog_name="python -m gemini_tasks.emulator")
