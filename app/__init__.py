"""The FastAPI service: loads one model directory and serves generation, prediction and similarity."""
