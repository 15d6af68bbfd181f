//! A valid component of an unrelated world (`example:other`): the host must refuse it.

wit_bindgen::generate!({ path: "wit", world: "other" });

struct Other;

impl exports::example::other::greeter::Guest for Other {
    fn hello() -> String {
        "hello".to_owned()
    }
}

export!(Other);
