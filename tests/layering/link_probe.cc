// A program that links one module's library whole (every object, referenced or not) and only the modules below it:
// it builds only if no object of that module calls into a module above. See tests/layering/check_includes.cmake.
int main() {
  return 0;
}
