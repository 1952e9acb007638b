//! Fakes of wire APIs over loopback.
