// Every admin act asks to confirm first (forms carrying data-confirm).
document.querySelectorAll("form[data-confirm]").forEach(function (form) {
  form.addEventListener("submit", function (ev) {
    if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
  });
});
