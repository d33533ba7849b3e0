// A state machine's trait is sealed: a type from outside the machine
// (here another machine's state) cannot join it.
batpak_types::define_state_machine!(DoorState { Open, Closed, Locked });
batpak_types::define_state_machine!(LightState { On, Off });

impl DoorState for On {}

fn main() {}
