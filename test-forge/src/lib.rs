//! A GitHub-compatible test forge (in progress).
