"""Data sets for few-shot learning: loaders, a decoded-image cache, downloads."""

from .classes import ClassSet, ImagePool, augment_rotations, merge_pools, split_classes

__all__ = ["ClassSet", "ImagePool", "augment_rotations", "merge_pools", "split_classes"]
