//! nightdump library.
