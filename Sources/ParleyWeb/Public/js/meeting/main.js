// The meeting page's entry module.
