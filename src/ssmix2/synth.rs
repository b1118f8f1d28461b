//! Synthetic SS-MIX2 corpus generator (being written).
