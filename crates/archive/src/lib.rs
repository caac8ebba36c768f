//! mongodump archive format.
