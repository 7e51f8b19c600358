"""Target profiles (what an accelerator accepts), as data."""
