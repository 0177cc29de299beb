#include <criterion/criterion.h>
Test(grammar, placeholder) { cr_assert(1); }
