//! Integration tests of the Huggy client against the fake Huggy, over real loopback HTTP.
//! One test binary: the fake's data set, paging and auth; each action's effect and
//! execFlow's policy matrix; the call log and test endpoints; fault injection; and the
//! client's classification of every kind of answer.

mod actions;
mod calls;
mod classification;
mod data;
mod faults;
mod support;
mod throughput;
