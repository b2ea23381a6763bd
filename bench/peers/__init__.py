"""What users would pick instead of gemini-tasks, set up the way their own documentation suggests."""
