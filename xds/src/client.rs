//! The ADS client (being written).
