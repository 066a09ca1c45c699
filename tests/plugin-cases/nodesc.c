/* nodesc: a shared object without the nexus_plugin descriptor. */
int nodesc_answer(void);

int nodesc_answer(void)
{
    return 42;
}
