// The owner of the shared precompiled header (cmake/pch.h): an otherwise empty unit.
