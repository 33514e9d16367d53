"""Pydantic models at the API boundary: XCreate / XUpdate in, XOut out."""
