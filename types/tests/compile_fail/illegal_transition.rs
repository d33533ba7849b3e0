// A locked door has no `open`: the transition does not compile.
batpak_types::define_state_machine!(DoorState { Open, Closed, Locked });
batpak_types::define_typestate!(Door<S: DoorState> { id: u32 });

impl Door<Closed> {
    fn open(self) -> Door<Open> {
        Door::new(self.id)
    }
}

fn main() {
    let locked: Door<Locked> = Door::new(1);
    let _opened = locked.open();
}
