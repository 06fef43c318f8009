//! Running commands: on this machine in process groups ([`local`]), on a host over
//! SSH ([`remote`]), and quoting words for a shell ([`shell`]).

pub mod local;
pub mod remote;
pub mod shell;
