//! Safe extraction of layer tarballs into a directory: no path may escape
//! the target (`..`, absolute paths, symlinked parents, hardlink escapes);
//! OCI / AUFS whiteouts become overlayfs whiteouts.
