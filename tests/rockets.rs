//! Rockets tests (being written).
