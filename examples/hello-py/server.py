# The hello service in Python: every public module-level function is a method.
# Run by leverd through lever-serve-py (lever.json "pyEntry").
def sayHello(name):
    return f"Hello, {name}!"
