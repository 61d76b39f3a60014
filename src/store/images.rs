//! Image, tag and layer rows (owned by the images work).
