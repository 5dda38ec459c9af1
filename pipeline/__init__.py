"""Inference pipeline of VToonify: faces, video I/O, stylisation."""
