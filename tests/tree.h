/*
 * tree.h — removing a folder of test files, for both test programs: the
 * Criterion suite (tests/util.h re-exports it) and the ThreadSanitizer
 * scenarios (tests/tsan/), which do not link Criterion.
 */
#ifndef EMBER_TESTS_TREE_H
#define EMBER_TESTS_TREE_H

/* Removes dir and what is in it (files, and folders of files; a symbolic link
 * is removed, never followed). A missing dir is not an error. */
void tu_remove_tree(const char *dir);

#endif
