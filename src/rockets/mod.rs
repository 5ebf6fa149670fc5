//! The rocket workload (being written).
