//! Translation that isolates bad objects (pure): when the translation fails on one object (two Services
//! claiming one address, …), that object is set aside with its error and the rest is translated again, so one
//! bad object never withholds the whole cluster's configuration. An error that names no object still fails
//! the whole translation (the previous configuration keeps being served).

use crate::manifest::{ManifestError, ManifestObject, ObjectKey};
use crate::translate::{Options, Translation, translate};

/// How many objects one translation may set aside before it gives up (each costs a full translation).
const MAX_SET_ASIDE: usize = 32;

/// The translation of what could be translated, and the objects set aside with their errors.
pub fn translate_isolating(
    mut objects: Vec<ManifestObject>,
    options: &Options,
) -> (
    Result<Translation, ManifestError>,
    Vec<(ObjectKey, ManifestError)>,
) {
    let mut set_aside = Vec::new();
    loop {
        match translate(&objects, options) {
            Ok(t) => return (Ok(t), set_aside),
            Err(e) => {
                let culprit = e
                    .object
                    .as_ref()
                    .and_then(|name| objects.iter().position(|o| o.object.display() == *name));
                match culprit {
                    Some(i) if set_aside.len() < MAX_SET_ASIDE => {
                        let obj = objects.remove(i);
                        set_aside.push((obj.object.key(), e));
                    }
                    _ => return (Err(e), set_aside),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::manifest::{ManifestFile, parse_files};

    fn objects(yaml: &str) -> Vec<ManifestObject> {
        parse_files(&[ManifestFile {
            name: "t.yaml".into(),
            text: yaml.into(),
        }])
        .unwrap()
    }

    #[test]
    fn a_service_that_takes_an_address_already_taken_is_set_aside() {
        let objs = objects(
            "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: x}\nspec: {clusterIP: 10.96.0.50, ports: [{port: 80}]}\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {name: b, namespace: x}\nspec: {clusterIP: 10.96.0.50, ports: [{port: 80}]}\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {name: c, namespace: x}\nspec: {clusterIP: 10.96.0.51, ports: [{port: 80}]}\n",
        );
        let options = Options {
            allocate_addresses: false,
            ..Options::default()
        };
        let (t, aside) = translate_isolating(objs, &options);
        let t = t.unwrap();
        assert_eq!(t.summary.services, 2);
        assert_eq!(aside.len(), 1);
        assert_eq!(aside[0].0.to_string(), "Service x/b");
        assert!(
            aside[0]
                .1
                .to_string()
                .contains("already the address of Service x/a")
        );
    }

    #[test]
    fn a_clean_world_sets_nothing_aside() {
        let objs = objects(
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {clusterIP: 10.96.0.50, ports: [{port: 80}]}\n",
        );
        let (t, aside) = translate_isolating(objs, &Options::default());
        assert!(t.is_ok());
        assert!(aside.is_empty());
    }
}
