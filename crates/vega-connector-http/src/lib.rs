//! The HTTP connector (being written).
