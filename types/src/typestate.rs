//! Typestate helpers: transitions between compile-time states that are
//! also events, and macros that declare sealed state sets.

use crate::event::EventKind;
use std::marker::PhantomData;

/// A transition from state `From` to state `To`, carried as an event.
#[derive(Debug, Clone)]
pub struct Transition<From, To, P> {
    kind: EventKind,
    payload: P,
    _states: PhantomData<fn(From) -> To>,
}

impl<From, To, P> Transition<From, To, P> {
    /// A transition appended as `kind` with `payload`.
    pub fn new(kind: EventKind, payload: P) -> Self {
        Self { kind, payload, _states: PhantomData }
    }
    /// The event kind.
    pub fn kind(&self) -> EventKind {
        self.kind
    }
    /// The payload.
    pub fn payload(&self) -> &P {
        &self.payload
    }
    /// The payload, by value.
    pub fn into_payload(self) -> P {
        self.payload
    }
}

/// Implemented by every state a [`crate::define_state_machine!`] declares.
pub trait StateMarker: Copy + Default + 'static {}

/// Declares a state trait and one unit struct per state:
/// `define_state_machine!(DoorState { Open, Closed, Locked });`
/// Transitions are then methods on `Thing<Open>` etc., so a transition from
/// the wrong state does not compile. The trait is sealed: its supertrait is
/// keyed by the machine's own states, so no other type can implement it
/// (short of naming `#[doc(hidden)]` internals).
#[macro_export]
macro_rules! define_state_machine {
    ($trait_name:ident { $($state:ident),+ $(,)? }) => {
        #[doc = concat!("The states of `", stringify!($trait_name), "` (sealed).")]
        pub trait $trait_name:
            $crate::typestate::StateMarker + $crate::typestate::__private::Sealed<($($state,)+)>
        {
        }
        $(
            #[doc = concat!("State `", stringify!($state), "`.")]
            #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
            pub struct $state;
            impl $crate::typestate::StateMarker for $state {}
            impl $trait_name for $state {}
        )+
        $crate::__seal_states!(($($state,)+); $($state),+);
    };
}

/// Implements the seal of one state machine for each of its states.
#[doc(hidden)]
#[macro_export]
macro_rules! __seal_states {
    ($machine:ty; $($state:ident),+) => {
        $(impl $crate::typestate::__private::Sealed<$machine> for $state {})+
    };
}

/// Not public API: the seal behind [`crate::define_state_machine!`].
#[doc(hidden)]
pub mod __private {
    /// Implemented only by the states of the machine `M` (the tuple of its states).
    pub trait Sealed<M> {}
}

/// Declares a struct tagged with a typestate parameter:
/// `define_typestate!(Door<S: DoorState> { id: u32 });`
#[macro_export]
macro_rules! define_typestate {
    ($name:ident<$s:ident: $bound:ident> { $($field:ident: $ty:ty),* $(,)? }) => {
        #[doc = concat!("`", stringify!($name), "` in state `", stringify!($s), "`.")]
        #[derive(Debug, Clone)]
        pub struct $name<$s: $bound> {
            $(#[doc = stringify!($field)] pub $field: $ty,)*
            _state: ::std::marker::PhantomData<$s>,
        }

        impl<$s: $bound> $name<$s> {
            /// Builds the value in state `S`.
            pub fn new($($field: $ty),*) -> Self {
                Self { $($field,)* _state: ::std::marker::PhantomData }
            }
            /// Borrows the fields.
            pub fn data(&self) -> ($(&$ty,)*) {
                ($(&self.$field,)*)
            }
            /// Takes the fields.
            pub fn into_data(self) -> ($($ty,)*) {
                ($(self.$field,)*)
            }
        }
    };
}

/// [`Transition`] at the path batpak 0.3.0 gives it (`typestate::transition`).
pub mod transition {
    pub use super::Transition;
}
