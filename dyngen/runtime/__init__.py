"""Running generated modules under dynode's Simulation API."""
