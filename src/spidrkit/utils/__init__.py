"""Small helpers shared by every stage: progress bars, logging, devices, atomic files."""
