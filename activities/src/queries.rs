//! Reads and catalog writes for the API.
