//! The job manifest (YAML) and the commands file: parsing and validation.
