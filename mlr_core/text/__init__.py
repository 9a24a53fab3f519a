"""Text side of the project: NLTK data provisioning and the caption noun filter (TaI-DPT caption mining)."""
