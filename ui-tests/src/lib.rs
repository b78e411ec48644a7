//! Compile-fail tests of the derive live in `tests/`.
