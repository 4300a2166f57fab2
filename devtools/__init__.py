"""Developer tools: sample images, the demo and the benchmark. Not part of the installed package."""
