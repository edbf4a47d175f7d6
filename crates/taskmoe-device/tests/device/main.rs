//! The integration tests of `taskmoe-device`, one test binary with a module per topic.

mod device;
