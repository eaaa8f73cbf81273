"""Model files: names -> files (fixtures, downloads, generated stand-ins of any shape), quantizing, exporting a
Hugging Face directory, writing tokenizer files, and the weight bytes a model reads per token."""
