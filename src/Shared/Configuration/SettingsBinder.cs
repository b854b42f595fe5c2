using System.ComponentModel;
using System.ComponentModel.DataAnnotations;
using System.Globalization;
using System.Reflection;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Orchestrator.Configuration;

/// <summary>A setting with a value its program cannot use; the message is one line naming the setting and how it was set.</summary>
public sealed class SettingException(string message) : ArgumentException(message);

/// <summary>
/// Binds a configuration section to an options class and validates it (data annotations and
/// <see cref="IValidatableObject"/>), so that a bad value stops the program at start with one
/// line naming the setting, its variable and its flag ("Listen:GrpcPort (ORCH_GRPC_PORT, --port):
/// 'abc' is not a whole number"), rather than a binder's stack trace or a failure later on.
/// </summary>
public static class SettingsBinder
{
    /// <summary>Binds <paramref name="section"/> into a new <typeparamref name="T"/> and validates it.</summary>
    /// <exception cref="SettingException">A value of the wrong type, or one the options class rejects.</exception>
    public static T Bind<T>(IConfiguration configuration, string section, IReadOnlyList<Setting> settings) where T : class, new()
    {
        var options = new T();
        BindInto(configuration, section, settings, options);
        Validate(options, section, settings);
        return options;
    }

    /// <summary>Binds <paramref name="section"/> into <paramref name="options"/>, first checking that each value converts.</summary>
    /// <exception cref="SettingException">A value that does not convert to its property's type.</exception>
    public static void BindInto<T>(IConfiguration configuration, string section, IReadOnlyList<Setting> settings, T options) where T : class
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var values = configuration.GetSection(section);
        foreach (var property in typeof(T).GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanWrite))
        {
            if (values[property.Name] is not { } value) continue;
            var type = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
            if (type == typeof(string) || (value.Length == 0 && Nullable.GetUnderlyingType(property.PropertyType) is not null)) continue;
            var converter = TypeDescriptor.GetConverter(type);
            bool converts;
            try
            {
                converts = converter.CanConvertFrom(typeof(string)) && converter.ConvertFromInvariantString(value) is not null;
            }
            catch (Exception e) when (e is FormatException or ArgumentException or NotSupportedException or OverflowException || e.InnerException is FormatException or OverflowException)
            {
                converts = false;
            }
            if (!converts)
                throw new SettingException($"{Settings.Describe(settings, $"{section}:{property.Name}")}: '{value}' is not {Expected(type)}");
        }
        values.Bind(options);
    }

    /// <summary>Runs the options class's validation; the first failure becomes a <see cref="SettingException"/>.</summary>
    public static void Validate<T>(T options, string section, IReadOnlyList<Setting> settings) where T : class
    {
        if (Failure(options, section, settings) is { } failure) throw new SettingException(failure);
    }

    /// <summary>The first validation failure as one line naming the setting, or null when the options are valid.</summary>
    public static string? Failure<T>(T options, string section, IReadOnlyList<Setting> settings) where T : class
    {
        ArgumentNullException.ThrowIfNull(options);
        var results = new List<ValidationResult>();
        if (Validator.TryValidateObject(options, new ValidationContext(options), results, validateAllProperties: true)) return null;
        var first = results[0];
        var member = first.MemberNames.FirstOrDefault();
        return member is null ? $"{section}: {first.ErrorMessage}" : $"{Settings.Describe(settings, $"{section}:{member}")}: {first.ErrorMessage}";
    }

    /// <summary>
    /// Registers <typeparamref name="T"/> bound from <paramref name="section"/> through
    /// <see cref="BindInto"/>, then any <paramref name="configure"/> given in code, validated when
    /// the host starts.
    /// </summary>
    public static OptionsBuilder<T> AddSettings<T>(this IServiceCollection services, string section, IReadOnlyList<Setting> settings, Action<T>? configure = null) where T : class
    {
        var builder = services.AddOptions<T>().Configure<IConfiguration>((o, configuration) => BindInto(configuration, section, settings, o));
        if (configure is not null) builder.Configure(configure);
        services.AddSingleton<IValidateOptions<T>>(new SettingsValidator<T>(section, settings));
        return builder.ValidateOnStart();
    }

    private sealed class SettingsValidator<T>(string section, IReadOnlyList<Setting> settings) : IValidateOptions<T> where T : class
    {
        public ValidateOptionsResult Validate(string? name, T options) =>
            Failure(options, section, settings) is { } failure ? ValidateOptionsResult.Fail(failure) : ValidateOptionsResult.Success;
    }

    private static string Expected(Type type) => type switch
    {
        _ when type == typeof(int) || type == typeof(long) => "a whole number",
        _ when type == typeof(double) => "a number",
        _ when type == typeof(bool) => "true or false",
        _ when type == typeof(TimeSpan) => "a duration (hh:mm:ss, e.g. 00:00:10)",
        _ when type.IsEnum => "one of " + string.Join(", ", Enum.GetNames(type).Select(n => n.ToLowerInvariant())),
        _ => "a " + type.Name,
    };
}
