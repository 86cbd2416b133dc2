# Same module name in both apps' working_dirs, different contents: each
# sub-interpreter must import its own.
NAME = "b"
VALUE = "pristine b"
